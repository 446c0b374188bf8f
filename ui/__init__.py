"""The Streamlit user interface: ``rag chat`` starts ``ui/app.py`` (chat with citations, documents, settings)."""
