/**
 * An app using the official `openai` client, unchanged, through the tokenlease sidecar. The client
 * reads OPENAI_BASE_URL (set to the sidecar) and OPENAI_API_KEY (any value: the sidecar injects
 * the provider's key) from the environment itself; the code is what it would be without tokenlease.
 *
 *   OPENAI_BASE_URL=http://127.0.0.1:8089/v1 OPENAI_API_KEY=unused node examples/app/ask.ts "question" ...
 *
 * Every question is asked at once; with the provider allowing two in flight, the sidecar makes the
 * rest wait their turn instead of letting the provider refuse them.
 */
import OpenAI from 'openai';

const questions = process.argv.slice(2);
if (questions.length === 0)
  questions.push('What is a lease?', 'What is a sidecar?', 'What is a quota?', 'What is 1302?');

const client = new OpenAI({ maxRetries: 2 });
const started = performance.now();
const answers = await Promise.all(
  questions.map(async (question) => {
    const completion = await client.chat.completions.create({
      model: 'glm-4.6',
      max_tokens: 64,
      messages: [{ role: 'user', content: question }],
    });
    return { question, answer: completion.choices[0]?.message.content ?? '', usage: completion.usage };
  }),
);
for (const { question, answer, usage } of answers) {
  console.log(
    `Q: ${question}\nA: ${answer}\n   (${usage?.prompt_tokens} prompt + ${usage?.completion_tokens} completion tokens)\n`,
  );
}
console.log(`${answers.length} answers in ${((performance.now() - started) / 1000).toFixed(2)}s`);
