"""The care register (关爱台账, seed 3.2; docs/care.md): residents, visits and level changes in PostgreSQL
(:mod:`~gateway.care.store`), overdue visits as tickets (:mod:`~gateway.care.overdue`, run by the SLA watchdog), the
REST routes (:mod:`~gateway.care.api`) and the dashboard's data source (:mod:`~gateway.care.dashboard`). The rules
(schedule, masking, who may do what) are pure, in :mod:`twin.care`."""
