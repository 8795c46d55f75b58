-- Runs once, when the PostgreSQL volume is first created: the warehouse lives beside Airflow's
-- metadata database on the same server, in its own database. adloop's migrations create its tables.
CREATE DATABASE adloop_warehouse;
