"""What `dhaga.monkey` patches in, one module per thing patched; nothing here is public."""
