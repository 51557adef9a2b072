"""Programs: the document marketing writes (model, validation, canonical form), the catalogue
every service keeps of the newest version of each program, and message templating."""
