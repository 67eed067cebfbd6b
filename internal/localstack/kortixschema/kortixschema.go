// Package kortixschema holds a fixture of the existing Kortix tables the
// service works on. Production already has them; tests, benchmarks and the
// local dev stack create them from SQL here.
package kortixschema

import _ "embed"

// SQL creates the Kortix tables, trigger and indexes in an empty database.
//
//go:embed schema.sql
var SQL string
