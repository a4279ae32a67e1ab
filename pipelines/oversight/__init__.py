"""The oversight marts as files: `marts/<mart>.sql` and `marts/<mart>.yaml`, and the
reference tables and macros (`oversight_ref.*`) their SQL reads."""
