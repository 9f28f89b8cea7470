"""Command groups, in the order `detector --help` lists them. Adding a command is a module here plus one line."""

from cli.commands import data, export, pipeline, predict, serve, ui

MODULES = (data, pipeline, export, predict, serve, ui)
