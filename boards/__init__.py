"""Shipped data: the boards/ folder of the repository, installed as eehw.boards."""
