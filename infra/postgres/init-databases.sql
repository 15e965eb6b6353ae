-- Run once by the postgres image on an empty volume: the databases of the Prefect and MLflow servers
-- (the local stack, `alp stack up`, creates the same two).
CREATE DATABASE prefect;
CREATE DATABASE mlflow;
