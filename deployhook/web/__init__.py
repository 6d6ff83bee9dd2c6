"""Tornado only: the application, thin handlers, the JSON API and the pages."""
