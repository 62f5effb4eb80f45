"""Demo pieces: the legacy backend stand-in and the demo route table (kiosk + voting)."""
