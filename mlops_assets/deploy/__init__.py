"""Deploy: the Bento of the production model, its application test, and rollback."""
