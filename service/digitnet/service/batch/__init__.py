"""Batch scoring: walking folders, the local, server and Dask backends, the rows the job writes, shards and their merge."""
