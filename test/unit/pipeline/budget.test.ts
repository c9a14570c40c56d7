import { MemoryStore } from '../../../src/stores/memory-store.js';
import { runBudgetStageSuite } from './budget.suite.js';

runBudgetStageSuite('MemoryStore', (now) => new MemoryStore({ now }));
