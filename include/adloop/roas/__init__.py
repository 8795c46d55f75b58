"""ROAS: the tables that answer what each ad cost and brought in, and the report built on them."""
