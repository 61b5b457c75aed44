// Started ahead with `node -e`, blocked on fd 3 until the runner sends the
// program's argv and environment. No code of the program runs before.
(() => {
  const fs = require("fs");
  const path = require("path");
  const message = JSON.parse(fs.readFileSync(3, "utf8"));
  fs.closeSync(3);
  for (const [name, value] of message.env) {
    process.env[name] = value;
  }
  // As `node main.js` would: the script's absolute path in argv[1], then
  // loaded as the main module.
  const [script, ...args] = message.argv;
  process.argv = [process.argv[0], path.resolve(script), ...args];
  require("module").runMain();
})();
