"""Benchmarks and the bounded load run for unipost_connect (run by hand; see README.md).

Also a tiny Django app (label ``bench``) with the baseline views' table and a table
recording the completion signals, for the load run's audit.
"""
