"""Serve trained models over HTTP: python -m lora_lab.serve adapters.<name>=<job, export or sweep dir>.

sources.py resolves and checks what a path holds, engine.py keeps one base per backbone with every
adapter attached, batcher.py micro-batches requests onto one model thread, index.py answers
/v1/similar, monitoring.py /metrics, app.py is the FastAPI app, and static/ the web page.
"""
