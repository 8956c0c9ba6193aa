"""The service layer the CLI, workers and API call: catalog, ingestion, vector stores, search."""
