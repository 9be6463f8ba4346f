"""The knowledge base kept in the repo: SOP checklists, policies and cases (YAML, read by twin.knowledge)."""
