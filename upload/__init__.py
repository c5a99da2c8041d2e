"""upload: VIN-linked workshop records, kept in a local outbox and delivered to the manufacturer's endpoint.

Modules (``upload`` never imports ``obdtool`` or ``adapters``; obdtool uses upload, not the other way round):

* :mod:`upload.schema` - the record contract (``record-v1.schema.json``) and :func:`validate_record`.
* :mod:`upload.outbox` - the SQLite outbox: every record is committed here before any network traffic.
* :mod:`upload.credentials` - the API token, kept only in the operating system's keyring.
* :mod:`upload.client` - HTTPS delivery with retries, idempotency keys and :func:`deliver_pending`.
* :mod:`upload.receiver` - the reference receiver implementing ``openapi.yaml``, for tests and integrators.
* :mod:`upload.errors` - the error tree rooted at :class:`~upload.errors.UploadError`.
"""

__all__: list[str] = []
