import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatDuration } from '../../../src/pipeline/limits/headers.js';
import { MemoryStore } from '../../../src/stores/memory-store.js';
import { runLimitsStageSuite } from './limits.suite.js';

runLimitsStageSuite('MemoryStore', () => new MemoryStore());

describe('limits stage', () => {
  it('formats reset durations the way OpenAI does', () => {
    assert.equal(formatDuration(12), '12ms');
    assert.equal(formatDuration(1000), '1s');
    assert.equal(formatDuration(51_189), '51.189s');
    assert.equal(formatDuration(360_000), '6m0s');
    assert.equal(formatDuration(3_723_500), '1h2m3.5s');
  });
});
