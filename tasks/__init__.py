"""Thin Celery tasks: parse input, call one service, map errors to retry or dead-letter."""
