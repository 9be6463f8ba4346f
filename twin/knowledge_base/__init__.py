"""FAQ entries of the knowledge base (YAML data; see twin/knowledge.py for the format)."""
