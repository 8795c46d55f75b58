# adloop's image, for every Airflow component in docker-compose.yaml and for the webhook receiver.
#
# It installs exactly what `make` installs on a laptop: requirements.txt under constraints.txt,
# then the adloop package itself (editable, from include/). No other Python packages are added,
# so a test that passes locally runs on the same versions here.
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    AIRFLOW_HOME=/opt/airflow \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/adloop/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/adloop/plugins \
    PYTHONPATH=/opt/adloop/plugins

# tini reaps the task processes Airflow's workers start and forwards stop signals to them.
# The compose file mounts named volumes on logs/ and auth/; Docker gives a new volume the owner of
# the directory it is mounted over, so both exist here, owned by the user the services run as.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 50000 --gid 0 airflow \
 && mkdir -p /opt/airflow/logs /opt/airflow/auth /opt/adloop \
 && chown -R airflow:0 /opt/airflow /opt/adloop

WORKDIR /opt/adloop
RUN pip install uv
# Dependencies first, so changing adloop's code does not reinstall Airflow.
COPY requirements.txt constraints.txt ./
RUN uv pip install --system -r requirements.txt -c constraints.txt
COPY pyproject.toml ./
COPY include ./include
RUN uv pip install --system --no-deps -e .
COPY dags ./dags
COPY plugins ./plugins

USER airflow
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["airflow", "version"]
