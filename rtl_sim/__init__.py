"""Shipped data: the rtl_sim/ folder of the repository, installed as eehw.rtl_sim."""
