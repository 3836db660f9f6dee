<#
.SYNOPSIS
  kiosk-vm-watchdog heartbeat for a Windows guest (PowerShell 2.0 and later: Windows 7 to 11).

.DESCRIPTION
  Run (default): forever, GET <Url>/api/v1/heartbeat?seq=N&status=ok[&vm=NAME], then wait
  -Interval seconds. N counts from 1 in memory only, so after a snapshot revert it is back at
  the snapshot's value. A failed request is logged once and retried at the next beat; the loop
  never ends on its own.

  -Once: one heartbeat; exit code 0 when the service answered 2xx.

  -RequestRevert REASON: asks the service to revert this VM to its snapshot:
  GET <Url>/api/v1/revert/request?reason=REASON[&vm=NAME]; exit code 0 when it answered 2xx.

  Settings come from the parameters, else from -ConfigFile (the INI file the AutoIt scripts
  use: [host] url, vm, timeout_seconds; [heartbeat] interval_seconds), else config.ini beside
  this script when it exists, else the defaults.

.EXAMPLE
  powershell -ExecutionPolicy Bypass -WindowStyle Hidden -File C:\kiosk\heartbeat.ps1 -Url http://192.168.122.1:8000

.EXAMPLE
  powershell -ExecutionPolicy Bypass -File C:\kiosk\heartbeat.ps1 -RequestRevert app_crashed
#>
param(
  [string]$Url = '',
  [string]$Vm = '',
  [double]$Interval = 0,
  [int]$TimeoutSeconds = 0,
  [string]$ConfigFile = '',
  [switch]$Once,
  [string]$RequestRevert = '',
  [string]$LogFile = ''
)

$ErrorActionPreference = 'Stop'
# $PSScriptRoot is PowerShell 3+; this works on 2.0.
$scriptDir = Split-Path -Parent $MyInvocation.MyCommand.Definition

function Read-IniFile([string]$Path) {
  $ini = @{}
  $section = ''
  foreach ($line in [System.IO.File]::ReadAllLines($Path)) {
    $line = $line.Trim()
    if ($line -eq '' -or $line.StartsWith(';') -or $line.StartsWith('#')) { continue }
    if ($line -match '^\[(.+)\]$') { $section = $matches[1].Trim().ToLower(); continue }
    $eq = $line.IndexOf('=')
    if ($eq -gt 0) { $ini[$section + '.' + $line.Substring(0, $eq).Trim().ToLower()] = $line.Substring($eq + 1).Trim() }
  }
  return $ini
}

function Stop-WithUsageError([string]$Message) {
  [Console]::Error.WriteLine("heartbeat.ps1: $Message")
  exit 2
}

# --- settings: parameters, then the config file, then defaults --------------------------------
if ($ConfigFile -eq '' -and (Test-Path (Join-Path $scriptDir 'config.ini'))) { $ConfigFile = Join-Path $scriptDir 'config.ini' }
$ini = @{}
if ($ConfigFile -ne '') {
  if (-not (Test-Path $ConfigFile)) { Stop-WithUsageError "config file not found: $ConfigFile" }
  $ini = Read-IniFile $ConfigFile
}
if ($Url -eq '') { $Url = $ini['host.url'] }
if ($Url -eq '' -or $Url -eq $null) { $Url = 'http://192.168.122.1:8000' }
if ($Vm -eq '' -and $ini['host.vm']) { $Vm = $ini['host.vm'] }
if ($Interval -le 0) { if ($ini['heartbeat.interval_seconds']) { $Interval = [double]$ini['heartbeat.interval_seconds'] } else { $Interval = 1 } }
if ($TimeoutSeconds -le 0) { if ($ini['host.timeout_seconds']) { $TimeoutSeconds = [int]$ini['host.timeout_seconds'] } else { $TimeoutSeconds = 3 } }
if ($LogFile -eq '') { if ($ini['log.file']) { $LogFile = $ini['log.file'] } else { $LogFile = Join-Path $env:TEMP 'kiosk-vm-watchdog.log' } }

$Url = $Url.TrimEnd('/')
if ($Url -notmatch '^https?://[^/?#]+$') { Stop-WithUsageError "the service URL must look like http://192.168.122.1:8000, got '$Url'" }
if ($Interval -lt 0.2 -or $Interval -gt 60) { Stop-WithUsageError "Interval must be 0.2 to 60 seconds, got $Interval" }
if ($TimeoutSeconds -lt 1 -or $TimeoutSeconds -gt 60) { Stop-WithUsageError "TimeoutSeconds must be 1 to 60, got $TimeoutSeconds" }
if ($RequestRevert -ne '' -and $RequestRevert -notmatch '^[\w .:,/-]{1,200}$') {
  Stop-WithUsageError "a revert reason may hold letters, digits, spaces and _ . : , / - only, got '$RequestRevert'"
}

function Write-KvwLog([string]$Message) {
  $line = (Get-Date).ToString('yyyy-MM-dd HH:mm:ss') + " heartbeat.ps1: $Message"
  try {
    if ((Test-Path $LogFile) -and (Get-Item $LogFile).Length -gt 1MB) { Move-Item -Force $LogFile "$LogFile.1" }
    Add-Content -Path $LogFile -Value $line
  } catch { }
  [Console]::Error.WriteLine($line)
}

# GET base URL + $PathAndQuery (vm=... added when set); $true when the service answered 2xx
# within the timeout. HttpWebRequest: Invoke-WebRequest does not exist before PowerShell 3.
function Invoke-KvwGet([string]$PathAndQuery) {
  $target = $Url + $PathAndQuery
  if ($Vm -ne '') {
    $separator = '?'
    if ($target.Contains('?')) { $separator = '&' }
    $target += $separator + 'vm=' + [System.Uri]::EscapeDataString($Vm)
  }
  $request = [System.Net.WebRequest]::Create($target)
  $request.Method = 'GET'
  $request.Timeout = $TimeoutSeconds * 1000
  $request.ReadWriteTimeout = $TimeoutSeconds * 1000
  $request.KeepAlive = $false
  # A proxy set up for browsing must not get between the guest and its host.
  $request.Proxy = $null
  try {
    $response = $request.GetResponse()
    $code = [int]$response.StatusCode
    $response.Close()
    $script:lastError = "HTTP $code"
    return ($code -ge 200 -and $code -lt 300)
  } catch {
    $script:lastError = $_.Exception.Message
    return $false
  }
}

if ($RequestRevert -ne '') {
  if (Invoke-KvwGet ('/api/v1/revert/request?reason=' + [System.Uri]::EscapeDataString($RequestRevert))) {
    Write-KvwLog "revert requested ($RequestRevert)"
    exit 0
  }
  Write-KvwLog "revert request to $Url failed: $lastError"
  exit 1
}

if ($Once) {
  if (Invoke-KvwGet '/api/v1/heartbeat?seq=1&status=ok') { exit 0 }
  Write-KvwLog "no answer from ${Url}: $lastError"
  exit 1
}

$seq = 1
$reachable = 'unknown'
$intervalMs = [int]($Interval * 1000)
Write-KvwLog "started: $Url every $Interval s"
while ($true) {
  $started = Get-Date
  if (Invoke-KvwGet ('/api/v1/heartbeat?seq=' + $seq + '&status=ok')) {
    if ($reachable -ne 'yes') { Write-KvwLog "service at $Url answers (seq $seq)" }
    $reachable = 'yes'
  } else {
    if ($reachable -ne 'no') { Write-KvwLog "no answer from $Url (seq $seq): $lastError; retrying every beat" }
    $reachable = 'no'
  }
  $seq++
  $left = $intervalMs - [int]((Get-Date) - $started).TotalMilliseconds
  if ($left -gt 0) { Start-Sleep -Milliseconds $left }
}
