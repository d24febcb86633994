// The demo's headless page: everything goes through connect.js (window.UniPostConnect,
// loaded by {% unipost_connect_script %}) and the JSON API, as a React or Vue front end
// would do it from its components. English only: it is a demo of the script, not of i18n.
const { connect, request, getConfig, urlFor } = window.UniPostConnect;
const config = getConfig();

const outcome = document.getElementById("outcome");
const waiting = document.getElementById("waiting");
const waitingText = document.getElementById("waiting-text");
const stopWaiting = document.getElementById("stop-waiting");
const events = document.getElementById("events");
const accountList = document.getElementById("accounts");
const noAccounts = document.getElementById("no-accounts");
const buttons = Array.from(document.querySelectorAll("button.demo-connect"));
const labels = Object.fromEntries(buttons.map((button) => [button.dataset.platform, button.dataset.label]));

let current = null; // the flow in progress: its promise has cancel()

function log(text) {
  const item = document.createElement("li");
  item.textContent = text;
  events.append(item);
}

function say(text) {
  outcome.textContent = text;
}

async function showAccounts() {
  let accounts;
  try {
    ({ accounts } = await request(config.accountsUrl));
  } catch (error) {
    say(error.message);
    return;
  }
  const shown = accounts.filter((account) => account.status !== "disconnected");
  accountList.replaceChildren(
    ...shown.map((account) => {
      const label = labels[account.platform] || account.platform;
      const item = document.createElement("li");
      item.className = `demo-account demo-status-${account.status}`;
      const status = account.status === "active" ? "Active" : "Reconnect required";
      item.append(`${label}: ${account.account_name || "(no name)"} (${status}) `);
      const disconnect = document.createElement("button");
      disconnect.type = "button";
      disconnect.textContent = `Disconnect ${label}`;
      disconnect.addEventListener("click", () => disconnectAccount(account, label, disconnect));
      item.append(disconnect);
      return item;
    }),
  );
  noAccounts.hidden = shown.length > 0;
  accountList.setAttribute("aria-busy", "false");
  const connected = new Set(shown.map((account) => account.platform));
  for (const button of buttons) {
    const label = button.dataset.label;
    button.textContent = connected.has(button.dataset.platform) ? `Reconnect ${label}` : `Connect ${label}`;
  }
}

async function disconnectAccount(account, label, button) {
  button.disabled = true;
  try {
    await request(urlFor(config.accountUrl, account.id), { method: "DELETE" });
    say(`Your ${label} account is disconnected.`);
  } catch (error) {
    say(error.message);
  }
  await showAccounts();
}

function start(button) {
  const platform = button.dataset.platform;
  const label = button.dataset.label;
  if (current !== null) {
    current.cancel();
  }
  say("");
  log(`connect("${platform}")`);
  waitingText.textContent = `Waiting for ${label} in the popup…`;
  waiting.dataset.popup = "opening";
  waiting.hidden = false;
  // Called inside the click: connect() opens the popup before anything else.
  const flow = connect(platform, {
    onSuccess(session) {
      const name = session.account && session.account.account_name;
      log(`onSuccess: ${session.status}${name ? ` (${name})` : ""}`);
      say(`Your ${label} account is connected.`);
    },
    onError(error) {
      log(`onError: ${error.code}`);
      say(error.message);
    },
    onPopupState(state) {
      waiting.dataset.popup = state;
      if (state === "cut_off") {
        // COOP took the popup out of this page's reach: its close cannot be seen.
        waitingText.textContent = `Waiting for ${label} in the popup… If you closed it, press Stop waiting.`;
      }
    },
    onClose(session) {
      log(`onClose: ${session.status}`);
      say(`The popup was closed before your ${label} connection was finished.`);
    },
  });
  current = flow;
  flow
    .catch((error) => {
      if (error.code === "aborted") {
        log("aborted");
        say(`Stopped waiting. If you finish in the popup, your ${label} account appears here after a reload.`);
      }
    })
    .finally(() => {
      if (current === flow) {
        current = null;
        waiting.hidden = true;
      }
      showAccounts();
    });
}

for (const button of buttons) {
  button.addEventListener("click", () => start(button));
}
stopWaiting.addEventListener("click", () => {
  if (current !== null) {
    current.cancel();
  }
});
showAccounts();
