// `npm run demo`: the built-in fake OpenAI upstream plus the gateway in front of it, in one
// process, so tollgate can be tried with no provider key. Ctrl-C stops both.
import { serve } from './main.js';
import { startFakeUpstream } from './fake-upstream/server.js';

export const DEMO_KEY = 'tg-demo-key-for-local-use-only';

const fake = await startFakeUpstream({ chunks: 12, chunkDelayMs: 80, recordRequests: false });
process.env.DEMO_UPSTREAM_URL = fake.url;
const port = process.env.TOLLGATE_PORT ?? '8080';
const base = `http://127.0.0.1:${port}/v1`;

process.stderr.write(`
  tollgate demo: gateway on ${base}, fake upstream on ${fake.url}
  team 'demo', key ${DEMO_KEY}

  curl ${base}/chat/completions \\
    -H "Authorization: Bearer ${DEMO_KEY}" -H "Content-Type: application/json" \\
    -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}],"stream":true}'

  Python: OpenAI(base_url="${base}", api_key="${DEMO_KEY}")
  Node:   new OpenAI({ baseURL: '${base}', apiKey: '${DEMO_KEY}' })

  Ctrl-C to stop. Request log lines follow (JSON).

`);
await serve({ configPath: 'config/demo.yaml' });
