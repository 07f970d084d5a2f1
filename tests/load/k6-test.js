// k6 scenario for the churn API: the course chapter's stages and thresholds against the real
// routes (POST /predict with dataset customers, GET /health/ready).
//
//   k6 run tests/load/k6-test.js                                  (http://127.0.0.1:8000)
//   k6 run -e BASE_URL=https://churn.example.com -e API_KEY=... tests/load/k6-test.js
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

// Customers of the shipped dataset (src/churn_mlops/data/telco_churn.csv), as /predict bodies.
const CUSTOMERS = [
  {"customer_id": "8879-ZKJOF", "features": {"gender": "Female", "senior_citizen": 0, "partner": "No", "dependents": "No", "tenure": 41, "phone_service": "Yes", "multiple_lines": "No", "internet_service": "DSL", "online_security": "Yes", "online_backup": "No", "device_protection": "Yes", "tech_support": "Yes", "streaming_tv": "Yes", "streaming_movies": "Yes", "contract": "One year", "paperless_billing": "Yes", "payment_method": "Bank transfer (automatic)", "monthly_charges": 79.85, "total_charges": 3320.75}},
  {"customer_id": "0201-MIBOL", "features": {"gender": "Female", "senior_citizen": 1, "partner": "No", "dependents": "No", "tenure": 66, "phone_service": "Yes", "multiple_lines": "Yes", "internet_service": "Fiber optic", "online_security": "Yes", "online_backup": "No", "device_protection": "No", "tech_support": "No", "streaming_tv": "Yes", "streaming_movies": "Yes", "contract": "Two year", "paperless_billing": "Yes", "payment_method": "Bank transfer (automatic)", "monthly_charges": 102.4, "total_charges": 6471.85}},
  {"customer_id": "1600-DILPE", "features": {"gender": "Female", "senior_citizen": 0, "partner": "No", "dependents": "No", "tenure": 12, "phone_service": "Yes", "multiple_lines": "No", "internet_service": "DSL", "online_security": "No", "online_backup": "No", "device_protection": "No", "tech_support": "No", "streaming_tv": "No", "streaming_movies": "No", "contract": "Month-to-month", "paperless_billing": "Yes", "payment_method": "Bank transfer (automatic)", "monthly_charges": 45.0, "total_charges": 524.35}},
  {"customer_id": "8601-QACRS", "features": {"gender": "Female", "senior_citizen": 0, "partner": "No", "dependents": "No", "tenure": 5, "phone_service": "Yes", "multiple_lines": "Yes", "internet_service": "DSL", "online_security": "No", "online_backup": "No", "device_protection": "No", "tech_support": "No", "streaming_tv": "No", "streaming_movies": "No", "contract": "Month-to-month", "paperless_billing": "Yes", "payment_method": "Mailed check", "monthly_charges": 50.6, "total_charges": 249.95}},
  {"customer_id": "7919-ZODZZ", "features": {"gender": "Female", "senior_citizen": 0, "partner": "Yes", "dependents": "Yes", "tenure": 10, "phone_service": "Yes", "multiple_lines": "No", "internet_service": "DSL", "online_security": "No", "online_backup": "Yes", "device_protection": "Yes", "tech_support": "No", "streaming_tv": "No", "streaming_movies": "Yes", "contract": "One year", "paperless_billing": "Yes", "payment_method": "Mailed check", "monthly_charges": 65.9, "total_charges": 660.05}},
  {"customer_id": "7964-ZRKKG", "features": {"gender": "Male", "senior_citizen": 0, "partner": "Yes", "dependents": "No", "tenure": 67, "phone_service": "Yes", "multiple_lines": "Yes", "internet_service": "Fiber optic", "online_security": "No", "online_backup": "Yes", "device_protection": "No", "tech_support": "No", "streaming_tv": "Yes", "streaming_movies": "No", "contract": "One year", "paperless_billing": "Yes", "payment_method": "Bank transfer (automatic)", "monthly_charges": 88.4, "total_charges": 5798.3}},
];

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
