-- One database per service: no service reads another's tables.
CREATE DATABASE intake;
CREATE DATABASE scoring;
CREATE DATABASE sla_monitor;
CREATE DATABASE feedback;
CREATE DATABASE crm_sync;
