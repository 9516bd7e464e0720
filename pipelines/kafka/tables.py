"""Faust topics and tables of raw bytes: the stream stages serialise their own values (msgpack),
once, instead of through Faust's codecs."""


def raw_topic(app, name: str):
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw",
                     value_serializer="raw")


def raw_table(app, name: str, **kwargs):
    """A table of bytes to bytes: we serialise values ourselves (msgpack), once."""
    table = app.Table(name, key_type=bytes, value_type=bytes, **kwargs)
    table.key_serializer = table.value_serializer = "raw"
    return table
