package storage

// InTx and InIdempotentTx let tests run transactions through the store's
// one transaction helper.
var (
	InTx           = (*Store).inTx
	InIdempotentTx = (*Store).inIdempotentTx
)
