package main

import "context"

func (b *bench) queries(ctx context.Context) error { return nil }
func (b *bench) memory(ctx context.Context) error  { return nil }
func (b *bench) export(ctx context.Context) error  { return nil }
