"""Datasets: seed tables, image folders, digits, text corpora. Everything offline."""
