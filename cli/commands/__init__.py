"""Command groups, in the order `detector --help` lists them. Adding a command is a module here plus one line."""

from cli.commands import data, export, pipeline, predict, registry, serve, ui

MODULES = (data, pipeline, export, predict, serve, registry, ui)
