"""The clinic: FastAPI application, pages, patient forms, JSON API and the submission writer
(see docs/clinic.md)."""
