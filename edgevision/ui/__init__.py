"""The Streamlit page (needs the ui extra)."""
