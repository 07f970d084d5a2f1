// k6 scenario for the churn API: the course chapter's stages and thresholds against the real
// routes (POST /predict with dataset customers, GET /health/ready).
//
//   python -m tests.load.bodies --out k6-bodies.json    (the training data's customers)
//   k6 run -e BODIES=k6-bodies.json tests/load/k6-test.js          (http://127.0.0.1:8000)
//   k6 run -e BASE_URL=https://churn.example.com -e API_KEY=... -e BODIES=... tests/load/k6-test.js
//
// API_KEY is sent as X-API-Key (a key with the predict scope: `churn-mlops keys create`);
// without it the server must have authentication off. tests/load/test_k6_script.py checks this
// file's syntax with node; k6 itself runs wherever it is installed.
import http from 'k6/http';
import { check, sleep } from 'k6';
import { Rate } from 'k6/metrics';

const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:8000').replace(/\/$/, '');
const API_KEY = __ENV.API_KEY || '';

const errorRate = new Rate('errors');

export const options = {
  stages: [
    { duration: '2m', target: 50 }, // ramp up to 50 users
    { duration: '5m', target: 50 }, // stay at 50 users
    { duration: '2m', target: 100 }, // ramp up to 100 users
    { duration: '5m', target: 100 }, // stay at 100 users
    { duration: '2m', target: 0 }, // ramp down
  ],
  thresholds: {
    http_req_duration: ['p(95)<500'], // 95 % of requests under 500 ms
    errors: ['rate<0.01'], // fewer than 1 % errors
  },
};

// /predict bodies from the training data, written by tests/load/bodies.py (any schema):
//   python -m tests.load.bodies --out k6-bodies.json
const CUSTOMERS = JSON.parse(open(__ENV.BODIES || './k6-bodies.json'));

const headers = { 'Content-Type': 'application/json' };
if (API_KEY) {
  headers['X-API-Key'] = API_KEY;
}
const params = { headers: headers };

export default function () {
  const customer = CUSTOMERS[Math.floor(Math.random() * CUSTOMERS.length)];
  const res = http.post(`${BASE_URL}/predict`, JSON.stringify(customer), params);
  const ok = check(res, {
    'status is 200': (r) => r.status === 200,
    'has a churn probability': (r) => r.status === 200 && typeof r.json('churn_probability') === 'number',
    'response time < 500ms': (r) => r.timings.duration < 500,
  });
  errorRate.add(!ok);

  if (Math.random() < 0.1) {
    const health = http.get(`${BASE_URL}/health/ready`);
    check(health, { 'ready': (r) => r.status === 200 });
  }
  sleep(1);
}
