package main

import (
	"encoding/json"

	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
)

func createDatabase(adminURL string) (string, func() error, error) {
	return storagetest.CreateDatabase(adminURL)
}

func extraJSON(m map[string]string) string {
	if m == nil {
		return "{}"
	}
	b, _ := json.Marshal(m)
	return string(b)
}
