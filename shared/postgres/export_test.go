package postgres

// MigrateFS is Migrate over other files, for the migration tests.
var MigrateFS = migrate
