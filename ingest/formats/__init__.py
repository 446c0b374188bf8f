"""One small module per file format; ``ingest.load.LOADERS`` is the one registry that maps suffixes to them.

``common`` holds what every loader shares (``LoadOptions``, the bad-input checks for zip-based Office files, section
paths); ``tables`` turns rows into Markdown tables; ``ocr`` reads text from page images (RapidOCR or Tesseract).
"""
