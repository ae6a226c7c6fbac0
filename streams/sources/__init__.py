"""Sources: everything that publishes RawDocuments to the raw topic."""
