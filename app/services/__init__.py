"""Domain logic shared by REST handlers and Celery tasks; no Flask request objects in here."""
