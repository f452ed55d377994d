"""The archive before purge (CLEANUP_ARCHIVE_DIR): what a purge batch deletes, written and
fsynced as compressed JSON Lines before the batch commits; read back, restored, expired.
The format is docs/archive.md."""
