package storage

import (
	"context"
	"fmt"
	"hash/fnv"
	"sync"

	"github.com/tapd-mirror/tapd-mirror/config"
)

// processLocks backs TryLock on SQLite, which is single-process by design.
var processLocks = struct {
	sync.Mutex
	held map[string]bool
}{held: map[string]bool{}}

// TryLock takes the named lock without waiting. On PostgreSQL it is a
// session advisory lock on a dedicated connection, so replicas exclude each
// other and a crashed holder's lock dies with its connection. On SQLite it
// only excludes goroutines of this process (SQLite mode is single-process).
func (s *Store) TryLock(ctx context.Context, name string) (release func(), ok bool, err error) {
	if s.dialect == config.SQLite {
		key := s.dsn + "\x00" + name
		processLocks.Lock()
		defer processLocks.Unlock()
		if processLocks.held[key] {
			return nil, false, nil
		}
		processLocks.held[key] = true
		return func() {
			processLocks.Lock()
			delete(processLocks.held, key)
			processLocks.Unlock()
		}, true, nil
	}
	h := fnv.New64a()
	h.Write([]byte("tapd-mirror:" + name))
	key := int64(h.Sum64())
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("lock %s: getting a connection: %w", name, err)
	}
	if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err != nil || !ok {
		conn.Close()
		if err != nil {
			return nil, false, fmt.Errorf("lock %s: %w", name, err)
		}
		return nil, false, nil
	}
	return func() {
		conn.ExecContext(context.Background(), `SELECT pg_advisory_unlock($1)`, key) //nolint:errcheck // closing the connection releases it anyway
		conn.Close()
	}, true, nil
}
