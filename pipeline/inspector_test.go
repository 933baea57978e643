package pipeline_test

import (
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

func pipelineInspector(rdb redis.UniversalClient) *asynq.Inspector {
	return asynq.NewInspectorFromRedisClient(rdb)
}
