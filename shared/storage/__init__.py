"""Where the registry and the datasets keep their bytes: a local folder, or an S3-compatible
object store (``s3://BUCKET/PREFIX``). The registry and the dataset store hold every rule; a
storage only knows how to make each of their steps atomic on its medium."""
