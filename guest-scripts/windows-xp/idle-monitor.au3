#NoTrayIcon
; kiosk-vm-watchdog: idle monitor. After [idle] minutes without mouse or keyboard input it asks
; the host for a revert, so the next visitor finds the artwork as it starts:
;   GET <url>/api/v1/revert/request?reason=idle
#include <Misc.au3>
#include <Timers.au3>
#include "common.au3"

_KVW_Init("idle-monitor")
If _Singleton("kiosk-vm-watchdog-idle-monitor", 1) = 0 Then Exit 0

Global $g_nMinutes = _KVW_ReadNumber("idle", "minutes", 15, 0, 1440)
Global $g_iCheckMs = _KVW_ReadNumber("idle", "check_seconds", 5, 1, 300) * 1000
Global $g_iRetryMs = _KVW_ReadNumber("idle", "retry_minutes", 5, 1, 1440) * 60000
If $g_nMinutes = 0 Then
	; Stays running, idle: run.exe would otherwise start it again every few seconds.
	_KVW_Log("[idle] minutes=0: idle reverts are off")
	While 1
		Sleep(3600000)
	WEnd
EndIf
Global $g_iLimitMs = $g_nMinutes * 60000
Global $g_hLastRequest = 0 ; TimerInit() of the last request while this idle spell lasts

_KVW_Log("started: revert after " & $g_nMinutes & " min without input")
While 1
	Local $iIdleMs = _Timer_GetIdleTime()
	If $iIdleMs < $g_iLimitMs Then
		$g_hLastRequest = 0 ; someone is here: a later idle spell asks again
	ElseIf $g_hLastRequest = 0 Or TimerDiff($g_hLastRequest) >= $g_iRetryMs Then
		; Normally the revert follows within seconds and this script starts afresh from the snapshot.
		_KVW_Log("no input for " & Round($iIdleMs / 60000, 1) & " min: asking for a revert")
		_KVW_RequestRevert("idle")
		$g_hLastRequest = TimerInit()
	EndIf
	Sleep($g_iCheckMs)
WEnd
