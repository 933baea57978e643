package testenv

import (
	"net/url"
	"strings"
)

// replaceDatabase swaps the database of a postgres URL or key=value DSN.
func replaceDatabase(dsn, name string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err == nil {
			u.Path = "/" + name
			return u.String()
		}
	}
	return dsn + " dbname=" + name
}
