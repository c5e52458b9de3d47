// SPDX-License-Identifier: GPL-3.0-or-later
// Decrypt n8n credentials (credentials_entity.data) with the stack's encryption key, the way n8n 1.x does it
// (n8n-core Cipher: base64 of "Salted__" + 8-byte salt + AES-256-CBC ciphertext; key and IV from MD5 rounds over
// key + salt, OpenSSL's EVP_BytesToKey), and check that each one is JSON again. Reads {key, credentials: [{id,
// name, data}]} on standard input (the key never on a command line); prints {total, decrypted, failed: [names]}.
'use strict';
const crypto = require('crypto');

const md5 = (data) => crypto.createHash('md5').update(data).digest();

function decrypt(data, key) {
  const input = Buffer.from(data, 'base64');
  if (input.length < 16 || input.subarray(0, 8).toString('latin1') !== 'Salted__') {
    throw new Error('not an n8n cipher text');
  }
  const password = Buffer.concat([Buffer.from(key, 'binary'), input.subarray(8, 16)]);
  const first = md5(password);
  const second = md5(Buffer.concat([first, password]));
  const iv = md5(Buffer.concat([second, password]));
  const decipher = crypto.createDecipheriv('aes-256-cbc', Buffer.concat([first, second]), iv);
  return Buffer.concat([decipher.update(input.subarray(16)), decipher.final()]).toString('utf-8');
}

let raw = '';
process.stdin.on('data', (chunk) => { raw += chunk; });
process.stdin.on('end', () => {
  const { key, credentials } = JSON.parse(raw);
  const failed = [];
  for (const credential of credentials) {
    try {
      const value = JSON.parse(decrypt(credential.data, key));
      if (typeof value !== 'object' || value === null) throw new Error('not an object');
    } catch (error) {
      failed.push(credential.name);
    }
  }
  process.stdout.write(JSON.stringify({ total: credentials.length, decrypted: credentials.length - failed.length,
    failed }) + '\n');
});
