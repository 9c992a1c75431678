"""Deploy stage (asset group ``deploy``): the Bento of the production model and its application test."""
