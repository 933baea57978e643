package redisconn

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// What a Redis Cluster refuses, and what Rapport does about it:
//
//   - A command or transaction whose keys hash to different slots fails with
//     CROSSSLOT. MGET of cache keys (one key per e-mail address) is such a
//     command: use MGet below. go-redis's ClusterClient splits a plain MGET
//     by slot itself (its command routing policies), but refuses one inside
//     a Pipeline, and older versions did not split at all.
//   - A TxPipeline (MULTI/EXEC) over keys of several slots fails with
//     redis.ErrCrossSlot before anything is sent. Rapport's transactions
//     (INCRBY+EXPIRE, HSET+EXPIRE) each touch one key, so they work; keep it
//     so, or put the keys under one hash tag: "rapport:{conn-1}:a" and
//     "rapport:{conn-1}:b" share a slot.
//   - A Lua script may touch only the keys it is given, all in one slot.
//     redis_rate's GCRA and the sync lease scripts take one key each.
//   - Pipelines of independent commands (SET per cache entry) are fine:
//     ClusterClient sends one batch per node.
//   - Only database 0 exists; Parse refuses a redis-cluster:// URL with a db.
//
// Asynq puts every key of a queue under the hash tag {queue}, so a queue
// lives on one node and its scripts work; different queues spread over the
// nodes.

// Slot is the cluster hash slot of key (0 to 16383): CRC16 of the key, or of
// the part between the first '{' and the following '}' when that part is
// not empty (a hash tag), modulo 16384.
func Slot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16(key) % 16384)
}

// crc16 is CRC-16/XMODEM, the checksum Redis Cluster hashes keys with.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// MGet reads keys like MGET: values in the order of keys, a string for a
// key that holds one and nil for a missing key. On a cluster client, whose
// nodes refuse an MGET across slots, it pipelines one GET per key instead:
// go-redis sends one batch per node, in parallel, so it still costs one
// round trip. Elsewhere it is a plain MGET.
func MGet(ctx context.Context, c redis.UniversalClient, keys ...string) ([]any, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	if _, ok := c.(*redis.ClusterClient); !ok {
		return c.MGet(ctx, keys...).Result()
	}
	pipe := c.Pipeline()
	cmds := make([]*redis.StringCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.Get(ctx, k)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("mget %d keys: %w", len(keys), err)
	}
	vals := make([]any, len(keys))
	for i, cmd := range cmds {
		v, err := cmd.Result()
		switch {
		case errors.Is(err, redis.Nil):
		case err != nil:
			return nil, fmt.Errorf("mget %s: %w", keys[i], err)
		default:
			vals[i] = v
		}
	}
	return vals, nil
}
