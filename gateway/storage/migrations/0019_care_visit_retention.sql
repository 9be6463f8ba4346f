-- Care visit details expire (twin/care.py PHOTO_RETENTION, NOTE_RETENTION; docs/care.md): the ticket service's
-- tick clears photos, then notes and checklists, of visits older than their period. This index holds only the
-- visits that still have details, so each tick's check reads the few that are due, not the whole log.
CREATE INDEX care_visits_details_age ON care_visits (visited_at)
    WHERE photo IS NOT NULL OR note <> '' OR checks <> '{}'::jsonb;
