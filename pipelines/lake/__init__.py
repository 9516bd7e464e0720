"""The lake: Parquet files per topic and event hour (``parquet``: write, compact, connect DuckDB),
buffered writes (``writer``), reads in event order (``event_log``), the source families a lake
holds (``sources``), and histories from elsewhere (``importer``, ``vigie import``). The live
sink that fills it from Kafka is a Faust app: ``pipelines.stream.lake_sink``."""
