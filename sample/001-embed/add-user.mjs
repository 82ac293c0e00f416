// Adds (or replaces) a user of the sample: node sample/001-embed/add-user.mjs <name> <password>
import { randomBytes, scryptSync } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';

const [name, password] = process.argv.slice(2);
if (!name || !password) {
  process.stderr.write('usage: node sample/001-embed/add-user.mjs <name> <password>\n');
  process.exit(2);
}
const file = new URL('./users.json', import.meta.url);
const data = JSON.parse(readFileSync(file, 'utf8'));
const salt = randomBytes(16).toString('hex');
data.users[name] = { salt, scrypt: scryptSync(password, salt, 32).toString('hex') };
writeFileSync(file, JSON.stringify(data, null, 2) + '\n');
process.stdout.write(`user ${name} saved\n`);
